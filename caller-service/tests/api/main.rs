mod emulator;
mod helpers;
mod jobs;
mod token_manager;

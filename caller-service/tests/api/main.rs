mod cli;
mod daemon;
mod emulator;
mod helpers;
mod jobs;
mod token_manager;

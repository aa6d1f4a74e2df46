mod cli;
mod daemon;
mod emulator;
mod helpers;
mod jobs;
mod logging;
mod mesh;
mod token_manager;

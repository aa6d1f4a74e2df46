//! The whole mesh in one process, on port 0: the real Entra emulator, the real tasks API and real
//! caller daemons, started by `mesh::Mesh` exactly as `cargo run -p mesh` starts them. The
//! callers run on a manual clock, so hours of token life pass in microseconds; the emulator and
//! the API run on the real one unless a test says otherwise.

mod faults;
mod flows;
mod helpers;
mod rotation_load;

//! Waiting for the signal that stops a service: SIGTERM (what orchestrators send) or SIGINT
//! (Ctrl-C). One place for the daemons that handle signals themselves: the API when it drains,
//! the caller (jobs finish first), the emulator's token projector.

/// Completes on SIGTERM or SIGINT, naming which. Where SIGTERM cannot be watched (not Unix, or
/// the handler could not be installed), Ctrl-C alone.
pub async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            return tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "SIGINT",
            };
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    "SIGINT"
}

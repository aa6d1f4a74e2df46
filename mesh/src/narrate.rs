//! What the mesh prints for a person: the services' own log events (tokens acquired and refreshed,
//! job outcomes, acquisition failures) turned into one line each, naming the caller they belong to,
//! and the lines the Python programs print (the reports service: one per request it served; the
//! inventory app: one per call it made).
//! The services log exactly as they do on their own; this layer only reads those events' fields,
//! and never one that could hold a secret (the services log fingerprints, never tokens).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;

/// Who is who: client IDs and job names to the caller's name, and each job's request line.
#[derive(Debug, Default, Clone)]
pub struct Cast {
    callers: HashMap<String, &'static str>,
    jobs: HashMap<String, (&'static str, String)>,
}

impl Cast {
    pub fn new(callers: &[crate::CallerSpec]) -> Self {
        let mut cast = Self::default();
        for caller in callers {
            cast.callers
                .insert(caller.client_id.to_owned(), caller.name);
            for job in &caller.jobs {
                let via = job.service.via();
                cast.jobs.insert(
                    job.name.to_owned(),
                    (caller.name, format!("{} {}{via}", job.method, job.path)),
                );
            }
        }
        cast
    }
}

/// Narrates the callers' events on stdout.
pub struct Narrator {
    cast: Cast,
}

impl Narrator {
    pub fn new(cast: Cast) -> Self {
        Self { cast }
    }
}

/// Prints one narration line on stdout: time, who, what. One write of the whole line under
/// stdout's lock, so lines from the launcher and from the services' events never interleave.
pub fn say(who: &str, what: &str) {
    let now = time::OffsetDateTime::now_utc();
    let line = format!(
        "{:02}:{:02}:{:02}  {who:<9} {what}\n",
        now.hour(),
        now.minute(),
        now.second()
    );
    let mut out = std::io::stdout().lock();
    // A closed stdout (a pipe whose reader left) must not take the mesh down.
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
}

#[derive(Default)]
struct Fields(HashMap<&'static str, String>);

impl Fields {
    fn get(&self, key: &str) -> &str {
        self.0.get(key).map(String::as_str).unwrap_or("")
    }

    fn secs(&self, key: &str) -> Option<u64> {
        self.0.get(key)?.parse().ok()
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name(), format!("{value:?}"));
    }
}

/// `95` → `1m35s`.
pub fn duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Narrator {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let target = event.metadata().target();
        let mut fields = Fields::default();
        if let Some(who) = target.strip_prefix("mesh::") {
            // A Python program's own line (the reports service: what it served, to which app;
            // the inventory app: what it called, and the answer), app ids replaced by names.
            event.record(&mut fields);
            let mut line = fields.get("message").to_owned();
            for (client_id, name) in &self.cast.callers {
                line = line.replace(client_id.as_str(), name);
            }
            say(who, &line);
            return;
        }
        if !target.starts_with("caller_service::") {
            return;
        }
        event.record(&mut fields);
        let message = fields.get("message");
        let caller = |f: &Fields| {
            self.cast
                .callers
                .get(f.get("client_id"))
                .copied()
                .unwrap_or("caller")
        };
        let (who, what) = if message == "token acquired" {
            let how = match (
                fields.get("trigger"),
                fields.secs("recovered_after_failures"),
            ) {
                ("Background", Some(n)) if n > 0 => {
                    format!("token refreshed after {n} failed attempts")
                }
                ("Background", _) => "token refreshed early, in the background".to_owned(),
                _ => "token acquired".to_owned(),
            };
            // `api://tasks-api/.default` → `tasks-api`: which service the token is for.
            let audience = fields
                .get("scope")
                .trim_start_matches("api://")
                .trim_end_matches("/.default");
            let mut what = format!(
                "{how}: {} token {} for {audience}, valid {}",
                fields.get("kind"),
                fields.get("fingerprint"),
                duration(fields.secs("lifetime_secs").unwrap_or(0)),
            );
            if let Some(refresh) = fields.secs("refresh_in_secs") {
                let _ = write!(what, ", next refresh in {}", duration(refresh));
            }
            (caller(&fields), what)
        } else if message.starts_with("token acquisition") {
            let what = format!(
                "token request failed ({}); {}",
                fields.get("reason"),
                if fields.get("serving_previous_token").is_empty() {
                    "no token yet".to_owned()
                } else {
                    format!("still serving {}", fields.get("serving_previous_token"))
                }
            );
            (caller(&fields), what)
        } else if message == "job succeeded" || message == "job failed" {
            let job = fields.get("job");
            let (who, request) = self
                .cast
                .jobs
                .get(job)
                .map(|(who, request)| (*who, request.as_str()))
                .unwrap_or(("caller", ""));
            let mut what = format!("{job}: {request} → ");
            match (fields.get("status"), fields.get("reason")) {
                ("", _) => {
                    let _ = write!(what, "no answer ({})", fields.get("detail"));
                }
                (status, "") => {
                    let _ = write!(what, "{status}");
                }
                (status, reason) => {
                    let _ = write!(what, "{status} refused: {reason}");
                }
            }
            let _ = write!(what, " ({} ms", fields.get("latency_ms"));
            if let Some(age) = fields.secs("token_age_secs") {
                let _ = write!(what, ", token age {}", duration(age));
            }
            if fields.get("retried_with_new_token") == "true" {
                what.push_str(", retried once with a new token");
            }
            what.push(')');
            (who, what)
        } else {
            return;
        };
        say(who, &what);
    }
}

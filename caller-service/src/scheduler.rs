//! The daemon's job loops: one task per job, sleeping on the [`Clock`] until the job's next time.
//! Runs are spawned into the job's own `JoinSet`, so the loop knows whether the previous run is
//! still going (for the overlap policy) and can wait for its runs at shutdown.

use crate::job::Job;
use crate::metrics::Metrics;
use crate::runner::JobRunner;
use crate::settings::OverlapPolicy;
use shared::clock::{self, Clock};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

#[derive(Debug, Clone)]
pub struct Scheduler {
    jobs: Vec<Arc<Job>>,
    runner: JobRunner,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
    /// How long running jobs may take to finish once shutdown starts.
    drain_deadline: Duration,
}

impl Scheduler {
    pub fn new(
        jobs: Vec<Job>,
        runner: JobRunner,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
        drain_deadline: Duration,
    ) -> Self {
        Self {
            jobs: jobs.into_iter().map(Arc::new).collect(),
            runner,
            clock,
            metrics,
            drain_deadline,
        }
    }

    /// Runs until `shutdown` turns true (or its sender is dropped), then stops scheduling, lets
    /// running jobs finish up to the drain deadline, and returns.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let mut loops = JoinSet::new();
        for job in &self.jobs {
            loops.spawn(job_loop(job.clone(), self.clone(), shutdown.clone()));
        }
        while loops.join_next().await.is_some() {}
    }
}

async fn job_loop(job: Arc<Job>, scheduler: Scheduler, mut shutdown: watch::Receiver<bool>) {
    let clock = scheduler.clock.clone();
    let mut runs: JoinSet<()> = JoinSet::new();
    let mut planned = clock.now();
    tracing::info!(job = %job.name, schedule = ?job.schedule, "job scheduled");
    loop {
        if *shutdown.borrow() {
            break;
        }
        let now = clock.now();
        let next = match job.schedule.next_after(planned) {
            // Fell behind (a long pause): skip the missed times instead of firing them all.
            Some(next) if next < now => job.schedule.next_after(now),
            other => other,
        };
        let Some(next) = next else {
            tracing::info!(job = %job.name, "schedule has no further times");
            break;
        };
        planned = next;
        let fire_at = next + job.schedule.jitter();
        tokio::select! {
            () = clock.sleep_until(fire_at) => {}
            _ = shutdown.changed() => break,
        }
        while runs.try_join_next().is_some() {}
        if !runs.is_empty() && job.overlap == OverlapPolicy::Skip {
            tracing::warn!(job = %job.name, "previous run still going; skipping this one");
            scheduler
                .metrics
                .job_runs
                .with_label_values(&[job.name.as_str(), "skipped"])
                .inc();
            continue;
        }
        let runner = scheduler.runner.clone();
        let job = job.clone();
        runs.spawn(async move {
            runner.run(&job).await;
        });
    }
    if runs.is_empty() {
        return;
    }
    tracing::info!(job = %job.name, running = runs.len(), "waiting for running job(s) to finish");
    let drained = clock::timeout(&*clock, scheduler.drain_deadline, async {
        while runs.join_next().await.is_some() {}
    })
    .await;
    if drained.is_none() {
        tracing::warn!(
            job = %job.name,
            abandoned = runs.len(),
            "shutdown deadline reached; abandoning running job(s)"
        );
        runs.abort_all();
    }
}

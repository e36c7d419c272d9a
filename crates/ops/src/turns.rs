//! First come, first served reconciles.
//!
//! kube-runtime's `Controller`, once its concurrency limit is reached, moves the requests that
//! come due into a hash set and takes them from it in hash order as workers free up
//! (`scheduler.rs`, `poll_pop_queue_message`). Under a backlog (a fleet of Syncs created at once)
//! passes then run in an order unrelated to when they were asked for: with 1000 Syncs created over
//! 47 s and 4 workers, the median Sync got its first pass 20 s after its create, as with workers
//! taking requests in order, but the slowest 84 s after it (33 s in order; `make bench-vs-flux`).
//!
//! A controller using [`Turns`] runs with kube-runtime's limit off and takes a turn at the start
//! of each reconcile: a fair semaphore of as many turns as workers hands them out in the order
//! the reconciles asked, which is the order their requests came due. What waits is only the
//! reconcile's first few bytes (its request and context): start the pass proper, boxed, once the
//! turn is taken. kube-runtime still never runs two reconciles of one object at once.
//!
//! On shutdown, [`Turns::close`] makes every reconcile still waiting give up at once (the
//! controller then stops after those that run), instead of the whole backlog running first.

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Semaphore, SemaphorePermit};

/// Turns for `n` reconciles at once, handed out first come, first served.
#[derive(Debug)]
pub struct Turns {
    turns: Semaphore,
    /// Reconciles waiting for a turn, as a gauge a controller can register.
    waiting: Gauge,
}

/// One reconcile's turn; the next waiting reconcile gets it when this is dropped.
pub type Turn<'a> = SemaphorePermit<'a>;

impl Turns {
    /// Turns for `workers` reconciles at once (at least one).
    pub fn new(workers: usize) -> Self {
        Self {
            turns: Semaphore::new(workers.max(1)),
            waiting: Gauge::default(),
        }
    }

    /// Waits for a turn, behind every reconcile that asked before; `None` once the turns are
    /// [closed](Turns::close): the reconcile must end without doing anything.
    pub async fn take(&self) -> Option<Turn<'_>> {
        self.waiting.inc();
        let _counted = Waiting(&self.waiting);
        self.turns.acquire().await.ok()
    }

    /// How many reconciles wait for a turn now (a backlog's length).
    pub fn waiting(&self) -> i64 {
        self.waiting.get()
    }

    /// The number of reconciles waiting, as a gauge to register (it follows every change).
    pub fn waiting_gauge(&self) -> Gauge {
        self.waiting.clone()
    }

    /// Ends the turns: every reconcile waiting, and every one that asks from now on, is told to
    /// give up. Reconciles that have a turn go on to their end.
    pub fn close(&self) {
        self.turns.close();
    }
}

/// Counts one reconcile waiting until it gets its turn or is dropped (a cancelled future).
struct Waiting<'a>(&'a Gauge);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn turns_go_in_the_order_they_were_asked_for() {
        let turns = Arc::new(Turns::new(2));
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..10u32 {
            let (turns, order) = (turns.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _turn = turns.take().await.unwrap();
                order.lock().unwrap().push(i);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }));
            // Each asks after the one before (tasks first run in no set order).
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(turns.waiting(), 8, "two run, the rest wait");
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..10).collect::<Vec<_>>());
        assert_eq!(turns.waiting(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn closing_sends_the_waiting_away_and_lets_the_running_finish() {
        let turns = Arc::new(Turns::new(1));
        let running = turns.take().await.unwrap();
        let waiting = {
            let turns = turns.clone();
            tokio::spawn(async move { turns.take().await.is_some() })
        };
        tokio::task::yield_now().await;
        assert_eq!(turns.waiting(), 1);
        turns.close();
        assert!(!waiting.await.unwrap(), "a reconcile waiting gives up");
        assert!(turns.take().await.is_none(), "so does one asking later");
        assert_eq!(turns.waiting(), 0);
        drop(running);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reconcile_dropped_while_waiting_is_no_longer_counted() {
        let turns = Turns::new(1);
        let _running = turns.take().await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(5), turns.take()).await;
        assert!(waiting.is_err(), "no turn while the one turn is taken");
        assert_eq!(turns.waiting(), 0);
    }
}

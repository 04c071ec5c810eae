//! Bounds on the signature verification work the ACS does for requests that
//! are not yet authenticated.
//!
//! Verification runs libxml and xmlsec on a blocking thread that cannot be
//! interrupted. The precheck refuses the transforms that make it expensive;
//! these limits are the second line: at most `concurrency` verifications
//! run at once per replica, a few more may wait briefly, everything beyond
//! is answered 503 at once, and a verification that overruns its budget
//! answers 503 while its slot stays taken until the thread is done, so
//! stuck work can never pile up.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

/// How long a verification may take before its request is answered 503. A
/// real response verifies in a few milliseconds.
pub const VERIFY_BUDGET: Duration = Duration::from_secs(2);
/// How long a request waits for a free verification slot.
pub const SLOT_WAIT: Duration = Duration::from_secs(1);
/// Requests allowed to wait for a slot, per slot.
const WAITING_PER_SLOT: usize = 8;

/// Why a verification did not run to its end.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Busy {
    #[error("every signature verification slot is taken")]
    Full,
    #[error("the signature verification exceeded its {}s budget", VERIFY_BUDGET.as_secs())]
    OverBudget,
    #[error("the signature verification panicked: {0}")]
    Panicked(String),
}

/// The per-replica verification slots (cloning shares them).
#[derive(Clone, Debug)]
pub struct VerifyLimits {
    slots: Arc<Semaphore>,
    admitted: Arc<Semaphore>,
    budget: Duration,
}

impl VerifyLimits {
    /// `concurrency` verifications at once (at least one).
    pub fn new(concurrency: usize) -> Self {
        Self::with_budget(concurrency, VERIFY_BUDGET)
    }

    fn with_budget(concurrency: usize, budget: Duration) -> Self {
        let concurrency = concurrency.max(1);
        Self {
            slots: Arc::new(Semaphore::new(concurrency)),
            admitted: Arc::new(Semaphore::new(concurrency * (1 + WAITING_PER_SLOT))),
            budget,
        }
    }

    /// Half the cores (at least one): the other half keeps serving SCIM and
    /// running the controllers while logins are verified.
    pub fn default_concurrency() -> usize {
        std::thread::available_parallelism()
            .map(|n| n.get() / 2)
            .unwrap_or(1)
            .max(1)
    }

    /// Runs `verify` on a blocking thread within the limits.
    pub async fn run<T, F>(&self, verify: F) -> Result<T, Busy>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let _admitted = self
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| Busy::Full)?;
        let slot = tokio::time::timeout(SLOT_WAIT, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| Busy::Full)?
            .map_err(|_| Busy::Full)?;
        // The slot is released when the work ends, not when the request does.
        let work = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            verify()
        });
        match tokio::time::timeout(self.budget, work).await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(error)) => Err(Busy::Panicked(error.to_string())),
            Err(_) => Err(Busy::OverBudget),
        }
    }
}

impl Default for VerifyLimits {
    fn default() -> Self {
        Self::new(Self::default_concurrency())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[tokio::test]
    async fn work_within_the_budget_returns_its_result() {
        let limits = VerifyLimits::new(1);
        assert_eq!(limits.run(|| 7).await, Ok(7));
    }

    #[tokio::test]
    async fn overrunning_work_answers_at_the_budget_and_keeps_its_slot() {
        let limits = VerifyLimits::with_budget(1, Duration::from_millis(50));
        let (release, hold) = mpsc::channel::<()>();
        let started = std::time::Instant::now();
        let slow = limits.run(move || hold.recv().ok()).await;
        assert_eq!(slow, Err(Busy::OverBudget));
        assert!(started.elapsed() < Duration::from_secs(1));
        // The stuck thread still holds the only slot: the next request waits
        // SLOT_WAIT and is turned away rather than starting more work.
        assert_eq!(limits.run(|| 1).await, Err(Busy::Full));
        release.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(limits.run(|| 2).await, Ok(2));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_beyond_the_waiting_room_are_refused_at_once() {
        let limits = VerifyLimits::new(1);
        let (release, hold) = mpsc::channel::<()>();
        let hold = Arc::new(std::sync::Mutex::new(hold));
        let running = {
            let limits = limits.clone();
            let hold = hold.clone();
            tokio::spawn(async move { limits.run(move || hold.lock().unwrap().recv().ok()).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let waiting: Vec<_> = (0..WAITING_PER_SLOT)
            .map(|_| {
                let limits = limits.clone();
                tokio::spawn(async move { limits.run(|| ()).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = std::time::Instant::now();
        assert_eq!(limits.run(|| ()).await, Err(Busy::Full));
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "refused without waiting"
        );
        release.send(()).unwrap();
        assert!(running.await.unwrap().is_ok());
        for waiter in waiting {
            assert_eq!(waiter.await.unwrap(), Ok(()));
        }
    }
}

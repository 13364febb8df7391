//! The run queue: at most `slots` runs hold a sandbox at once, and a freed slot goes round
//! robin — first between tenants, then between the groups of a tenant (a best-of-N parent's
//! attempts are one group; any other run is a group of its own), then first come first
//! served within a group. So a parent with eight attempts, or a tenant with many runs, never
//! holds up a single run of someone else for longer than one turn of the rotation.
//!
//! A waiter that gives up (its run was cancelled while queued) leaves the queue; a slot handed
//! to a waiter that has just gone is passed on, never lost.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Who a waiter is: its tenant and its group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueueKey {
    pub tenant: String,
    pub group: String,
}

/// A held slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    queue: Option<Arc<FairQueue>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(q) = self.queue.take() {
            q.release();
        }
    }
}

#[derive(Debug, Default)]
struct Tenant {
    /// Groups with waiters, in turn order.
    turn: VecDeque<String>,
    waiters: HashMap<String, VecDeque<oneshot::Sender<Slot>>>,
}

#[derive(Debug, Default)]
struct State {
    free: usize,
    /// Tenants with waiters, in turn order.
    turn: VecDeque<String>,
    tenants: HashMap<String, Tenant>,
}

impl State {
    /// The next waiter in the rotation, removed from the queue.
    fn next_waiter(&mut self) -> Option<oneshot::Sender<Slot>> {
        let tenant_name = self.turn.pop_front()?;
        let tenant = self.tenants.get_mut(&tenant_name)?;
        let group = tenant.turn.pop_front()?;
        let fifo = tenant.waiters.get_mut(&group)?;
        let waiter = fifo.pop_front();
        if fifo.is_empty() {
            tenant.waiters.remove(&group);
        } else {
            tenant.turn.push_back(group);
        }
        if tenant.turn.is_empty() {
            self.tenants.remove(&tenant_name);
        } else {
            self.turn.push_back(tenant_name);
        }
        waiter
    }

    /// Waiters still waiting (one that went away is skipped when its turn comes).
    fn waiting(&self) -> usize {
        self.tenants
            .values()
            .flat_map(|t| t.waiters.values())
            .flatten()
            .filter(|tx| !tx.is_closed())
            .count()
    }
}

/// The queue (see the module doc).
#[derive(Debug)]
pub struct FairQueue {
    state: Mutex<State>,
}

impl FairQueue {
    pub fn new(slots: usize) -> Arc<FairQueue> {
        Arc::new(FairQueue {
            state: Mutex::new(State {
                free: slots,
                ..State::default()
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a slot for `key`. Cancel-safe: dropping the future leaves the queue.
    pub async fn acquire(self: &Arc<Self>, key: &QueueKey) -> Slot {
        let rx = {
            let mut st = self.lock();
            if st.free > 0 && st.waiting() == 0 {
                st.free -= 1;
                return Slot {
                    queue: Some(self.clone()),
                };
            }
            let (tx, rx) = oneshot::channel();
            let tenant = st.tenants.entry(key.tenant.clone()).or_default();
            let tenant_was_idle = tenant.waiters.is_empty();
            let fifo = tenant.waiters.entry(key.group.clone()).or_default();
            if fifo.is_empty() {
                tenant.turn.push_back(key.group.clone());
            }
            fifo.push_back(tx);
            if tenant_was_idle {
                st.turn.push_back(key.tenant.clone());
            }
            rx
        };
        // A free slot may have been left by a waiter that went away: hand it on.
        self.dispatch();
        match rx.await {
            Ok(slot) => slot,
            // The queue never drops a live waiter's sender without sending; if it did, the
            // safest answer is to wait in line again rather than run over the limit.
            Err(_) => Box::pin(self.acquire(key)).await,
        }
    }

    /// Slots free now, and runs waiting.
    pub fn counts(&self) -> (usize, usize) {
        let st = self.lock();
        (st.free, st.waiting())
    }

    fn release(self: &Arc<Self>) {
        self.lock().free += 1;
        self.dispatch();
    }

    /// Hands free slots to waiters in turn; a waiter that has gone is skipped.
    fn dispatch(self: &Arc<Self>) {
        let mut st = self.lock();
        while st.free > 0 {
            let Some(tx) = st.next_waiter() else { break };
            st.free -= 1;
            if let Err(mut unsent) = tx.send(Slot {
                queue: Some(self.clone()),
            }) {
                // Gone: the slot is still free (and must not be released twice).
                unsent.queue = None;
                st.free += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(tenant: &str, group: &str) -> QueueKey {
        QueueKey {
            tenant: tenant.into(),
            group: group.into(),
        }
    }

    /// Queues `keys` in order behind one held slot, then frees slots one at a time and
    /// returns the order in which the waiters got them.
    async fn order_of(keys: &[QueueKey]) -> Vec<usize> {
        let q = FairQueue::new(1);
        let held = q.acquire(&key("x", "x")).await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for (i, k) in keys.iter().enumerate() {
            let (q2, k, tx) = (q.clone(), k.clone(), tx.clone());
            tokio::spawn(async move {
                let slot = q2.acquire(&k).await;
                tx.send((i, slot)).unwrap();
            });
            // Each waiter is in the queue before the next one comes.
            for _ in 0..100 {
                if q.counts().1 == i + 1 {
                    break;
                }
                tokio::task::yield_now().await;
            }
            assert_eq!(q.counts().1, i + 1);
        }
        drop(held);
        let mut order = Vec::new();
        for _ in keys {
            let (i, slot) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .unwrap()
                .unwrap();
            order.push(i);
            drop(slot);
        }
        order
    }

    #[tokio::test]
    async fn a_single_run_is_not_held_up_by_a_parents_attempts() {
        // Four attempts of one parent queued first, then a run of its own.
        let keys = [
            key("t", "parent"),
            key("t", "parent"),
            key("t", "parent"),
            key("t", "parent"),
            key("t", "solo"),
        ];
        assert_eq!(order_of(&keys).await, vec![0, 4, 1, 2, 3]);
    }

    #[tokio::test]
    async fn tenants_take_turns_whatever_one_of_them_queued() {
        let keys = [
            key("busy", "a"),
            key("busy", "b"),
            key("busy", "c"),
            key("quiet", "d"),
            key("quiet", "e"),
        ];
        assert_eq!(order_of(&keys).await, vec![0, 3, 1, 4, 2]);
    }

    #[tokio::test]
    async fn never_more_than_the_slots_and_a_waiter_that_leaves_loses_no_slot() {
        let q = FairQueue::new(2);
        let a = q.acquire(&key("t", "a")).await;
        let b = q.acquire(&key("t", "b")).await;
        assert_eq!(q.counts(), (0, 0));
        // A waiter that gives up (its run cancelled while queued) leaves the queue.
        let gone = tokio::time::timeout(Duration::from_millis(50), q.acquire(&key("t", "c"))).await;
        assert!(gone.is_err());
        assert_eq!(q.counts(), (0, 0));
        drop(a);
        assert_eq!(q.counts(), (1, 0));
        let c = q.acquire(&key("t", "c")).await;
        assert_eq!(q.counts(), (0, 0));
        drop(b);
        drop(c);
        assert_eq!(q.counts(), (2, 0));
    }
}

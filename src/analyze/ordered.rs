//! Work on the events of a log reader in parallel, with the results merged strictly in
//! reading order: the analyzer's tallies, and the requests the capacity report and `verify`
//! replay in log order.

use std::collections::BTreeMap;
use std::sync::mpsc::sync_channel;
use std::sync::{Mutex, PoisonError, TryLockError};

use rayon::prelude::*;

/// Runs `work` on each of `events` on the rayon workers, and `merge` on the results into
/// `state`, one at a time and in the events' order, whatever the number of threads. A fixed
/// number of permits bounds the events between the reader and the merge (queued, being worked
/// on, or waiting for an earlier one to merge), and with them memory, whatever the log's
/// size; enough to keep every worker busy, and the count never changes the result.
pub(crate) fn for_each_in_order<E: Send, T: Send, S: Send>(
    events: impl Iterator<Item = E> + Send,
    state: S,
    work: impl Fn(E) -> T + Sync,
    merge: impl Fn(&mut S, T) + Sync,
) -> S {
    let in_flight = 2 * rayon::current_num_threads() + 2;
    let (permit_tx, permit_rx) = sync_channel::<()>(in_flight);
    for _ in 0..in_flight {
        let _ = permit_tx.send(());
    }
    let in_order = InOrder::new(state);
    let merge = |state: &mut S, result: T| {
        merge(state, result);
        let _ = permit_tx.send(());
    };
    // Each event waits for a permit, then goes to the worker that asked for it, which read it
    // too (see `input::Reader`), works on it and offers the result for merging.
    events
        .map_while(move |event| permit_rx.recv().ok().map(|()| event))
        .enumerate()
        .par_bridge()
        .for_each(|(seq, event)| in_order.offer(seq as u64, work(event), &merge));
    in_order.into_state()
}

/// Results merged in reading order by the workers themselves: whichever worker finishes the
/// result due next merges it, and every later one already waiting. A merge thread of its own
/// made three busy threads on two cores; when it took the core of a worker that was reading
/// a chunk, the other worker waited for that read with its core idle (`perf sched`, two
/// runs on the benchmark log: a tenth and a sixth of both cores' time idle).
struct InOrder<T, S> {
    /// Items not merged yet, by their place in reading order.
    arrivals: Mutex<BTreeMap<u64, T>>,
    /// What they are merged into, held by the worker merging, and the place of the next.
    merging: Mutex<(S, u64)>,
}

impl<T, S> InOrder<T, S> {
    fn new(state: S) -> Self {
        InOrder { arrivals: Mutex::new(BTreeMap::new()), merging: Mutex::new((state, 0)) }
    }

    /// Queues item `seq` (each of 0, 1, 2, ... is offered once), then merges what is due,
    /// unless another worker is merging: that one takes this item too when it is due.
    fn offer(&self, seq: u64, item: T, merge: &impl Fn(&mut S, T)) {
        lock(&self.arrivals).insert(seq, item);
        let mut m = match self.merging.try_lock() {
            Ok(m) => m,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        loop {
            let mut arrivals = lock(&self.arrivals);
            let Some(item) = arrivals.remove(&m.1) else {
                // Let go of the merge while no item can be queued: one queued after this look
                // finds the merge free, and one queued before it was looked for.
                drop(m);
                return;
            };
            drop(arrivals);
            merge(&mut m.0, item);
            m.1 += 1;
        }
    }

    /// The merged state, once every item was offered.
    fn into_state(self) -> S {
        let arrivals = self.arrivals.into_inner().unwrap_or_else(PoisonError::into_inner);
        debug_assert!(arrivals.is_empty(), "an item was left unmerged");
        self.merging.into_inner().unwrap_or_else(PoisonError::into_inner).0
    }
}

/// Locks `m`, even if a worker panicked while holding it: that panic is the one to report.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// Items offered from several threads, in whatever order their work ends, are merged
    /// once each and in sequence: the profile's independence of the thread count rests on it.
    #[test]
    fn offered_items_merge_once_each_in_order() {
        const ITEMS: u64 = 50_000;
        for threads in [1, 2, 4, 8] {
            let in_order = InOrder::new(Vec::new());
            let taken = AtomicU64::new(0);
            std::thread::scope(|s| {
                for t in 0..threads {
                    let (in_order, taken) = (&in_order, &taken);
                    s.spawn(move || {
                        loop {
                            let seq = taken.fetch_add(1, Ordering::Relaxed);
                            if seq >= ITEMS {
                                break;
                            }
                            // Uneven work, so that items arrive out of order.
                            if (seq + t) % 3 == 0 {
                                std::thread::yield_now();
                            }
                            in_order.offer(seq, seq, &|merged: &mut Vec<u64>, item| merged.push(item));
                        }
                    });
                }
            });
            assert_eq!(in_order.into_state(), (0..ITEMS).collect::<Vec<_>>(), "{threads} threads");
        }
    }
}

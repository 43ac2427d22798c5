//! Tasks created, completed and failed per minute over the last hour: samples of this
//! instance's counters kept in a ring of minutes (a few hundred bytes, whatever the load).

use std::{collections::VecDeque, sync::Mutex};

/// The counters at one moment (or their increase over a minute).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Tasks created.
    pub created: u64,
    /// Tasks seen completing.
    pub completed: u64,
    /// Tasks seen failing, for any reason.
    pub failed: u64,
}

impl Totals {
    fn since(self, earlier: Self) -> Self {
        Self {
            created: self.created.saturating_sub(earlier.created),
            completed: self.completed.saturating_sub(earlier.completed),
            failed: self.failed.saturating_sub(earlier.failed),
        }
    }
}

/// The last sample of each minute.
#[derive(Debug, Default)]
pub struct Activity {
    /// (minute since the epoch, totals at its last sample), oldest first.
    samples: Mutex<VecDeque<(u64, Totals)>>,
}

impl Activity {
    /// Minutes drawn.
    pub const MINUTES: u64 = 60;

    /// Records the totals seen during `minute` (a later sample of the same minute replaces
    /// an earlier one).
    pub fn record(&self, minute: u64, totals: Totals) {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        match samples.back_mut() {
            Some((last, kept)) if *last == minute => *kept = totals,
            Some((last, _)) if *last > minute => {}
            _ => samples.push_back((minute, totals)),
        }
        // One more than drawn: the first drawn minute's increase needs the one before it.
        while samples
            .front()
            .is_some_and(|(m, _)| *m + Self::MINUTES < minute)
        {
            samples.pop_front();
        }
    }

    /// The increase in each of the [`Self::MINUTES`] minutes up to `now` (oldest first). A
    /// minute with no sample shows nothing and its counts go to the next sampled one; minutes
    /// before the first sample (before this instance started) show nothing.
    pub fn per_minute(&self, now: u64) -> Vec<Totals> {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let at_or_before = |minute: u64| {
            samples
                .iter()
                .rev()
                .find(|(m, _)| *m <= minute)
                .map(|(_, t)| *t)
        };
        (0..Self::MINUTES)
            .map(|i| {
                let Some(minute) = now.checked_sub(Self::MINUTES - 1 - i) else {
                    return Totals::default();
                };
                let sampled = samples.iter().any(|(m, _)| *m == minute);
                let before = minute.checked_sub(1).and_then(at_or_before);
                match (sampled, at_or_before(minute), before) {
                    (true, Some(end), Some(start)) => end.since(start),
                    _ => Totals::default(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(created: u64, completed: u64, failed: u64) -> Totals {
        Totals {
            created,
            completed,
            failed,
        }
    }

    #[test]
    fn each_minute_shows_what_its_samples_added() {
        let activity = Activity::default();
        activity.record(100, totals(5, 0, 0));
        activity.record(101, totals(8, 1, 0));
        activity.record(101, totals(12, 3, 1));
        activity.record(103, totals(20, 10, 2));
        let minutes = activity.per_minute(103);
        assert_eq!(minutes.len(), 60);
        let last = &minutes[56..];
        assert_eq!(
            last,
            [
                Totals::default(), // 100: the first sample, nothing before it to compare
                totals(7, 3, 1),   // 101
                Totals::default(), // 102: no sample
                totals(8, 7, 1),   // 103: what 102 and 103 added
            ]
        );
        assert!(minutes[..56].iter().all(|m| *m == Totals::default()));
    }

    #[test]
    fn the_ring_keeps_an_hour_and_one_minute() {
        let activity = Activity::default();
        for minute in 0..500 {
            activity.record(minute, totals(minute * 2, minute, 0));
        }
        assert_eq!(activity.samples.lock().unwrap().len(), 61);
        let minutes = activity.per_minute(499);
        assert!(minutes.iter().all(|m| *m == totals(2, 1, 0)), "{minutes:?}");
        // An hour later with no samples: nothing to show.
        assert!(
            activity
                .per_minute(499 + 60)
                .iter()
                .all(|m| *m == Totals::default())
        );
    }

    #[test]
    fn a_sample_from_the_past_is_ignored() {
        let activity = Activity::default();
        activity.record(10, totals(1, 0, 0));
        activity.record(9, totals(100, 0, 0));
        activity.record(11, totals(3, 0, 0));
        assert_eq!(activity.per_minute(11)[59], totals(2, 0, 0));
    }
}

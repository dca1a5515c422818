//! `[scheduler]`: the scheduler's section of the config file. The binary reads the file and
//! hands this section over; [`SchedulerConfig::settings`] turns it into [`SchedulerSettings`].

use chrono::TimeDelta;
use serde::Deserialize;

use crate::scheduler::SchedulerSettings;

/// `[scheduler]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// A firing later than this (seconds) counts as missed while cambot was down; missed firings
    /// follow the task's policy (`skip`, or `run_once`). Default 60.
    pub missed_grace_secs: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            missed_grace_secs: 60,
        }
    }
}

impl SchedulerConfig {
    /// The scheduler's settings for this section.
    pub fn settings(&self) -> SchedulerSettings {
        SchedulerSettings {
            // Absurdly large values saturate instead of panicking.
            missed_grace: i64::try_from(self.missed_grace_secs)
                .ok()
                .and_then(TimeDelta::try_seconds)
                .unwrap_or(TimeDelta::MAX),
        }
    }
}

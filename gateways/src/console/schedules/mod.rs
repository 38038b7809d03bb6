//! Scheduled work: the rules of a schedule ([`rules`]) and the scheduler that fires them
//! ([`scheduler`]), supervised beside the collector.

pub mod rules;
pub mod scheduler;

pub use scheduler::{Clock, Scheduler, SchedulerSettings, TickReport};

//! # turnstone-sim
//!
//! The cluster simulator: many real nodes — workstream manager, workstream actors, tool-call
//! actors, provider actor and bridge, the same actors `turnstone-server --redis-host` runs —
//! with a simulated model and simulated tools plugged in, over real Redis or the in-memory
//! transport. The in-memory transport runs on virtual time: a run with one seed gives the same
//! report every time, and simulated minutes pass in seconds.
//!
//! ```no_run
//! # fn demo() -> Result<(), turnstone_sim::SimError> {
//! use std::time::Duration;
//! use turnstone_sim::{Behaviour, ClusterSpec, Quiet, Scenario, SimConfig, run_in_memory};
//!
//! let config = SimConfig {
//!     cluster: ClusterSpec {
//!         nodes: 10,
//!         max_workstreams: 10,
//!         behaviour: Behaviour::default(),
//!         seed: 1,
//!         heartbeat_ttl: Duration::from_secs(60),
//!     },
//!     scenario: Scenario::Steady,
//!     duration: Duration::from_secs(60),
//!     mps: 5.0,
//!     burst_size: 100,
//!     kill_interval: Duration::from_secs(15),
//!     kill_count: 1,
//!     drain_timeout: Duration::from_secs(120),
//!     bucket: Duration::from_secs(1),
//!     redis_url: None,
//!     outage: Duration::from_secs(1),
//!     redis_server: None,
//! };
//! let report = run_in_memory(&config, &Quiet)?;
//! println!("{}", report.table());
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

pub mod allocator;
pub mod behaviour;
pub mod cluster;
pub mod model;
pub mod partition;
pub mod port;
pub mod program;
pub mod report;
pub mod scenario;

pub use behaviour::Behaviour;
pub use cluster::{ClusterError, ClusterSpec, SimCluster, SimNode};
pub use report::Report;
pub use scenario::{Progress, Quiet, Scenario, SimConfig, SimError, run, run_in_memory};

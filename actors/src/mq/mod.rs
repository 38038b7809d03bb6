//! Queue-driven agents across nodes (SPEC §1): the MQ protocol, Turnstone's Redis keys, the
//! bridge actor between a node and the cluster's queues, and the client library.

pub mod bridge;
pub mod client;
pub mod keys;
pub mod outbound;
pub mod port;
pub mod protocol;
pub mod spans;

pub use bridge::{Bridge, BridgeArgs, BridgeMsg, BridgeSettings};
pub use client::{
    BlockingClient, ClientError, EventStream, SendRequest, TurnResult, TurnstoneClient,
};
pub use keys::Keys;
pub use outbound::{Outbound, WsFrame};
pub use port::{
    CreateRequest, Created, EventForwarding, EventReceiver, EventSink, NodePort, PortError,
    PortEvent, SendOutcome, Watch,
};
pub use protocol::{Event, Inbound, ProtocolError};

//! Where events go after the sandbox's watcher has them: bursts folded into one event
//! ([`burst`]), the on-disk spool every writer appends to ([`spool`]), cordond's local
//! journal ([`journal`]) and the delivery to the collector ([`deliver`]), driven by
//! cordond's [`pipeline`].

pub mod burst;
pub mod deliver;
pub mod journal;
pub mod pipeline;
pub mod spool;

// The event type, by the name the modules here use for it.
use cordon_proto::event;

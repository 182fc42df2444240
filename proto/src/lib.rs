//! What crosses process and host boundaries in Cordon, shared by the agent (`cordon`,
//! `cordond`) and the collector (`cordon-collector`):
//!
//! * [`event`]: the one event type, and its JSON form;
//! * [`collector`]: what a host's cordond and the collector say to each other over HTTP.

pub mod collector;
pub mod event;

//! The edge side of the system: model bundles (`bundle`), the serving core that answers from
//! one (`catalogue`), the durable event log of what the edge collects (`events`), and the
//! map that carries vectors into a refitted WMF space (`align`).
//! Plain Rust: the HTTP service (`http`, behind the `edge` feature) and the Python bindings
//! are built on top of these.

pub mod align;
pub mod bundle;
pub mod catalogue;
pub mod events;
#[cfg(feature = "edge")]
pub mod http;

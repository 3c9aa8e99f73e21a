//! The store's record of message positions; shared with the webhook
//! ingester and the reconciler, so it lives in `switchyard-service`.

pub use switchyard_service::positions::StorePositions;

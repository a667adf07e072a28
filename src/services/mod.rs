//! services (in progress).

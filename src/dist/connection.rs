//! connection task (in progress).

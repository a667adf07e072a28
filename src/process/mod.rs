//! process (in progress).

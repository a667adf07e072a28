//! node (in progress).

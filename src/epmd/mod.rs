//! EPMD: the client, and the embedded EPMD used when none is running.

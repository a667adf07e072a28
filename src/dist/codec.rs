//! Distribution framing: length-prefixed frames, ticks, pass-through and fragmented headers.

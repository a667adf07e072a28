//! `erlang:phash2/1,2` computed bit for bit as the BEAM does.

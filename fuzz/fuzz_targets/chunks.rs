//! Shared by the targets: split bytes into pseudo-random chunks, as a socket
//! would deliver them. `seed` (one input byte) picks both the largest chunk
//! (1 << (seed & 7), so 1..=128 bytes) and the sequence of sizes.

pub fn split(seed: u8, data: &[u8]) -> Vec<&[u8]> {
    let max = 1usize << (seed & 7);
    let mut state = u32::from(seed) | 0x9E37_7900;
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        // xorshift32
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = 1 + (state as usize % max);
        let (head, tail) = rest.split_at(n.min(rest.len()));
        out.push(head);
        rest = tail;
    }
    out
}

//! Placeholder: the pool-size benchmark is being written.
fn main() {}

//! `turnstone-channel`: the chat gateway (Discord, Slack, Matrix) and the notify endpoint (`turnstone_gateways::programs::channel`).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    turnstone_gateways::programs::channel::main()
}

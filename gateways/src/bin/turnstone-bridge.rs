//! `turnstone-bridge`: the cluster bridge in front of a node server's HTTP/SSE API (`turnstone_gateways::programs::bridge`).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    turnstone_gateways::programs::bridge::main()
}

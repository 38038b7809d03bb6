//! `turnstone-server`: one node's HTTP/SSE API and browser UI (`turnstone_gateways::programs::server`).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    turnstone_gateways::programs::server::main()
}

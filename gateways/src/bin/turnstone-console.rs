//! `turnstone-console`: the cluster dashboard, cluster API and reverse proxy to node UIs (`turnstone_gateways::programs::console`).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    turnstone_gateways::programs::console::main()
}

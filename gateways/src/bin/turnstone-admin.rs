//! `turnstone-admin`: manage users and API tokens (`turnstone_gateways::programs::admin`).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    turnstone_gateways::programs::admin::main()
}

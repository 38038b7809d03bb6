//! `turnstone-eval`: score a system prompt and the tool set against cases (`turnstone_gateways::programs::eval`).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    turnstone_gateways::programs::eval::main()
}

//! `turnstone-sim`: simulate a Turnstone cluster (`turnstone_sim::program`).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    turnstone_sim::program::main()
}

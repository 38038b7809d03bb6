//! `turnstone`: the terminal REPL, and every other Turnstone program when started under its
//! name (a symlink such as `turnstone-server → turnstone`; `turnstone_gateways::programs`).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let argv0 = std::env::args_os().next();
    (turnstone_gateways::programs::by_name(argv0.as_deref()).main)()
}

//! The `dualwrite` command; see [`dualwrite::cli`].

/// mimalloc instead of the system allocator: the sync path allocates many small row
/// images (see `docs/benchmarks.md` for the measured difference).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    dualwrite::cli::main()
}

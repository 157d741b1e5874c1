//! The `dualwrite` command; see [`dualwrite::cli`].

fn main() -> std::process::ExitCode {
    dualwrite::cli::main()
}

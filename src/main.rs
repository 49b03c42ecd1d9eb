//! The `tidegate` binary: see [`tidegate::cli`].

// The request path allocates a few small, short-lived blocks per request
// (header maps, bodies, tasks); mimalloc's per-thread free lists serve them in
// far fewer instructions than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tidegate::cli::main()
}

//! Compiles the kernel half (`src/bpf/calls.bpf.c`, with Debian's clang) and generates
//! its skeleton: the Rust that loads it.
use std::path::PathBuf;

fn main() {
    let src = "src/bpf/calls.bpf.c";
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("calls.skel.rs");
    // The kernel's uapi headers for the build machine's architecture (asm/types.h).
    let multiarch = format!("-I/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    libbpf_cargo::SkeletonBuilder::new()
        .source(src)
        .clang_args([multiarch.as_str(), "-Wall", "-O2"])
        .build_and_generate(&out)
        .unwrap_or_else(|e| panic!("compiling {src} (needs clang and libbpf-dev): {e:#}"));
    println!("cargo:rerun-if-changed={src}");
}

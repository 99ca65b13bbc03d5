// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "sandbox-runner",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "sandbox-runner", targets: ["sandbox-runner"]),
        .library(name: "SandboxRunner", targets: ["SandboxRunner"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.0"),
        .package(url: "https://github.com/modelcontextprotocol/swift-sdk", from: "0.12.1"),
    ],
    targets: [
        // libcurl, libarchive, libseccomp and OpenSSL: headers only (libcurl4-openssl-dev,
        // libarchive-dev, libseccomp-dev, libssl-dev). None is linked: CLazyLink loads each on the
        // first call of one of its functions, so a command that needs none of them (`--version`,
        // `list`, a local `exec` but for libseccomp) does not load ~40 shared libraries at start.
        .systemLibrary(name: "CCurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CArchive", providers: [.apt(["libarchive-dev"])]),
        .systemLibrary(name: "CSeccomp", providers: [.apt(["libseccomp-dev"])]),
        .target(
            name: "CLazyLink",
            exclude: ["symbols.def", "link"],
            linkerSettings: [.linkedLibrary("dl"), .unsafeFlags(["-L", Context.packageDirectory + "/Sources/CLazyLink/link"])]
        ),
        .target(name: "CSystemShims"),
        // Registers the server modules' conformance records when serve, mcp or e2b-local starts
        // (see lazy-conformances.ld, linked into the executable below).
        .target(name: "CLazyConformances", exclude: ["lazy-conformances.ld"]),
        // e2b-local's launcher and TLS front: the system OpenSSL (libssl-dev), loaded by CLazyLink.
        .target(name: "CE2BLocal", dependencies: ["CLazyLink", "CSystemShims"]),
        .target(
            name: "SandboxRunner",
            dependencies: ["CCurl", "CArchive", "CSeccomp", "CSystemShims", "CLazyLink"],
            exclude: ["Egress/README.md", "Artifacts/README.md"]
        ),
        .target(
            name: "E2BLocal",
            dependencies: [
                "SandboxRunner",
                "CE2BLocal",
                .product(name: "Hummingbird", package: "hummingbird"),
            ],
            exclude: ["README.md"]
        ),
        .target(
            name: "AgentServers",
            dependencies: [
                "SandboxRunner",
                .product(name: "MCP", package: "swift-sdk"),
                .product(name: "Hummingbird", package: "hummingbird"),
            ],
            exclude: ["README.md"]
        ),
        .executableTarget(
            name: "sandbox-runner",
            dependencies: [
                "SandboxRunner",
                "E2BLocal",
                "AgentServers",
                "CLazyConformances",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            // The static Swift runtime's link arguments export every symbol of the executable's
            // own objects (~28,000: NIO, MCP, ours); nothing looks them up by name (the runtime
            // and Foundation find metadata through sections, and their own symbols are hidden by
            // --exclude-libs already), and a start-up dladdr in the runtime walks them all.
            // ld.lld (the toolchain's own) for the linker script that keeps the server modules'
            // conformance records apart until a server command registers them.
            linkerSettings: [.unsafeFlags([
                "-Xlinker", "--no-export-dynamic",
                "-use-ld=lld",
                "-Xlinker", "-T", "-Xlinker", Context.packageDirectory + "/Sources/CLazyConformances/lazy-conformances.ld",
            ])]
        ),
        .testTarget(
            name: "SandboxRunnerTests",
            dependencies: ["SandboxRunner"],
            exclude: ["Fixtures"]  // templates the tests load from disk by path
        ),
        .testTarget(
            name: "AgentServersTests",
            dependencies: [
                "AgentServers",
                "SandboxRunner",
                .product(name: "MCP", package: "swift-sdk"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]
        ),
        .testTarget(
            name: "E2BLocalTests",
            dependencies: [
                "E2BLocal",
                "SandboxRunner",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]
        ),
    ]
)

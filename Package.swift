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
        .systemLibrary(
            name: "CCurl",
            pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]
        ),
        .systemLibrary(
            name: "CArchive",
            pkgConfig: "libarchive",
            providers: [.apt(["libarchive-dev"])]
        ),
        .systemLibrary(
            name: "CSeccomp",
            pkgConfig: "libseccomp",
            providers: [.apt(["libseccomp-dev"])]
        ),
        .target(name: "CSystemShims"),
        // e2b-local's launcher and TLS front: the system OpenSSL that libcurl already loads (libssl-dev).
        .target(
            name: "CE2BLocal",
            linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto")]
        ),
        .target(
            name: "SandboxRunner",
            dependencies: ["CCurl", "CArchive", "CSeccomp", "CSystemShims"],
            exclude: ["Egress/README.md"]
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
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
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

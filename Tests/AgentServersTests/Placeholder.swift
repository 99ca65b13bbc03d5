import Testing
@Test func agentServersPlaceholder() {}

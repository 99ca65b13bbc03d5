enum AgentServersPlaceholder {}

//! Scripted mock model helpers (filled in with the agent tests).

"""A Jepsen-style soak of the example project: a workload generator over every door, a nemesis
of faults, a fault-injecting TCP proxy and a checker that reads the whole history (issue 13)."""

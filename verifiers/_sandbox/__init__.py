"""The code verifier's sandbox (private; the public face is ``verifiers.code``).

- ``host``: the caller's side: starting workers, cgroups, the bounded pool.
- ``worker``: the warm zygote, started as ``python -I -S -B worker.py CONFIG``;
  it loads ``child``, ``tests_role`` and ``root`` by path (stdlib only).
- ``child``: the wire format and the candidate role.
- ``tests_role``: the reference tests, run against proxies of the candidate.
- ``root``: namespaces, mounts, cgroups and rlimits of the isolated root.
"""

"""`intakegate.benchmarks`: the numbers users pick an artifact and a device by (`intakegate bench`).

Everything here measures the public path a desktop client uses (`Router.route`, tokenization
included), each artifact in a fresh process so that one artifact's imports, thread pools and
allocator cannot bias another's, and writes the speed beside each artifact's gate receipt and the
bundle's test-set figures. A run writes to `runs/bench/<device-name>/<bundle_version>/` unless
`--out` says otherwise; `benchmarks/results/` in the repository holds the committed runs (data,
not part of the package).
"""

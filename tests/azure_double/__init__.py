"""The Azure double: a stateful stand-in for the Azure APIs aca-infer calls, served over TLS on
127.0.0.1 to the real SDK clients, unpatched (test code, not product).

Start it
    `python -m tests.azure_double serve [--state DIR]` prints one JSON line (arm_endpoint,
    subscription_id, tenant_id, ca_bundle, files_port, state_dir, env) and serves until SIGTERM.
    Applying `env` points the CLI and the SDKs at it: ACA_INFER_ARM_ENDPOINT, the subscription
    and tenant, AZURE_TOKEN_CREDENTIALS=dev, REQUESTS_CA_BUNDLE/SSL_CERT_FILE (its CA), and a
    PATH whose stand-in `az` (tokens, account show, bicep build) and `bicep` come first.
    In pytest: the `azure_double` (per test) and `azure_double_module` fixtures; in code:
    `with AzureDouble() as double: ...`.

Break it on purpose
    `double.faults.add(Fault(...))` (or POST <arm_endpoint>/_double/faults): answer matching
    requests with a status/code/headers (429 + Retry-After, 5xx, 409, 401/403, 404) or drop the
    connection, optionally after part of the body. Domain switches in `double.config` (or POST
    /_double/config): unregistered_providers, unavailable_profiles, quota, replica_crash,
    deployment_failure, scale_to_zero_idle_s. `double.requests` (GET /_double/requests) is the
    request log.

Parts
    server.py (AzureDouble), listener.py (TLS HTTP), tls.py (CA), auth.py (tokens), arm.py
    (routing, subscriptions, resource groups, providers), lro.py (long-running operations),
    models.py (bodies against the SDK models), api_versions.py, deployments.py (+
    expressions.py, inference_template.py), storage_mgmt.py, loganalytics.py, tools.py and
    bicep_arm.py (stand-in az and bicep), fixture.py; Microsoft.App in apps.py, Azure Files in
    files.py.
"""

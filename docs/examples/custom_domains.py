from flask import Flask, request

from flask_dispatch import Dispatch, current_tenant

# Which customer owns which domain; a real site keeps this in its database.
CUSTOMER_DOMAINS = {"acme.com": "acme", "www.acme.com": "acme"}

app = Flask(__name__)
app.config["DISPATCH_DOMAIN"] = "example.com"
dispatch = Dispatch(app)


def create_tenant_app(name):
    tenant = Flask(f"tenant_{name}")

    @tenant.route("/")
    def home():
        return f"{current_tenant} at {request.host_url}"

    return tenant


@dispatch.subdomain
def tenant_for_subdomain(name):
    return create_tenant_app(name) if name in CUSTOMER_DOMAINS.values() else None


@dispatch.domain
def tenant_for_domain(host):
    return CUSTOMER_DOMAINS.get(host)  # acme.com -> "acme"; None: not ours


@app.route("/")
def landing():
    # Links from the host app into a tenant.
    return dispatch.tenant_url("acme", "/")

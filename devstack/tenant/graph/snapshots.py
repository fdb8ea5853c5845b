"""Applications and service principals as a tenant's state dir keeps them (Directory.to_dict)."""

from __future__ import annotations

from typing import Any

from devstack.tenant.graph.model import (
    Application,
    FederatedIdentityCredential,
    GraphObject,
    KeyCredential,
    PasswordCredential,
    ServicePrincipal,
)
from devstack.tenant.graph.seeds import catalogue


def saved(obj: GraphObject) -> dict[str, Any]:
    if isinstance(obj, Application):
        return {
            "createdAt": obj.created_at,
            "props": {
                k: v for k, v in obj.props.items() if k not in ("passwordCredentials", "keyCredentials")
            },
            "owners": obj.owners,
            "passwords": [p.to_dict() for p in obj.password_credentials],
            "keys": [k.to_dict() for k in obj.key_credentials],
            "federated": [f.to_dict() for f in obj.federated_credentials],
        }
    assert isinstance(obj, ServicePrincipal)
    props = obj.props
    if obj.seed:  # the catalogues are rebuilt from the project's files on load
        props = {k: v for k, v in props.items() if k not in ("appRoles", "oauth2PermissionScopes")}
    return {"createdAt": obj.created_at, "seed": obj.seed, "owners": obj.owners, "props": props}


def loaded_application(item: dict[str, Any]) -> Application:
    app = Application(item["props"]["id"], float(item["createdAt"]), dict(item["props"]))
    app.owners = list(item["owners"])
    app.password_credentials = [PasswordCredential.from_dict(p) for p in item["passwords"]]
    app.key_credentials = [KeyCredential.from_dict(k) for k in item["keys"]]
    app.federated_credentials = [FederatedIdentityCredential.from_dict(f) for f in item["federated"]]
    app.credentials_changed()
    return app


def loaded_service_principal(item: dict[str, Any]) -> ServicePrincipal:
    props = dict(item["props"])
    if item["seed"]:
        roles, scopes, _, _ = catalogue(item["seed"])
        props.setdefault("appRoles", roles)
        props.setdefault("oauth2PermissionScopes", scopes)
    sp = ServicePrincipal(props["id"], float(item["createdAt"]), props, seed=item["seed"])
    sp.owners = list(item["owners"])
    return sp

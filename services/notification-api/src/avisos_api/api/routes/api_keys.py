"""Publisher API keys (admins)."""

from __future__ import annotations

from fastapi import APIRouter, status

from avisos_api.api.deps import AdminUser, SessionDep
from avisos_api.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyPublic
from avisos_api.services import api_keys

router = APIRouter(prefix="/v1/admin/api-keys", tags=["api-keys"])


@router.get("", response_model=list[ApiKeyPublic])
async def list_keys(_: AdminUser, db: SessionDep) -> list[ApiKeyPublic]:
    return [ApiKeyPublic.model_validate(k) for k in await api_keys.list_all(db)]


@router.post("", response_model=ApiKeyCreated, status_code=status.HTTP_201_CREATED)
async def create_key(body: ApiKeyCreate, admin: AdminUser, db: SessionDep) -> ApiKeyCreated:
    """Create a key. The response holds the key itself, once; only a hash is kept."""
    row, plaintext = await api_keys.create(db, body.name, body.scopes, admin.id)
    await db.commit()
    return ApiKeyCreated(**ApiKeyPublic.model_validate(row).model_dump(), key=plaintext)


@router.post("/{key_id}/revoke", response_model=ApiKeyPublic)
async def revoke_key(key_id: str, _: AdminUser, db: SessionDep) -> ApiKeyPublic:
    row = await api_keys.revoke(db, key_id)
    await db.commit()
    return ApiKeyPublic.model_validate(row)

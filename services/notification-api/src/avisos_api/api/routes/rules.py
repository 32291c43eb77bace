"""Admin CRUD of rules: ``/v1/admin/rules``."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from avisos_api.api.deps import AdminUser, SessionDep
from avisos_api.rules import service as svc
from avisos_api.rules.schemas import RuleIn, RuleOut

router = APIRouter(prefix="/v1/admin/rules", tags=["rules"])


@router.get("", response_model=list[RuleOut])
async def list_rules(_: AdminUser, db: SessionDep) -> list[RuleOut]:
    return [RuleOut.model_validate(r) for r in await svc.list_rules(db)]


@router.post("", response_model=RuleOut, status_code=status.HTTP_201_CREATED)
async def create_rule(body: RuleIn, _: AdminUser, db: SessionDep) -> RuleOut:
    rule = await svc.create(db, body)
    await db.commit()
    return RuleOut.model_validate(rule)


@router.get("/{rule_id}", response_model=RuleOut)
async def get_rule(rule_id: uuid.UUID, _: AdminUser, db: SessionDep) -> RuleOut:
    return RuleOut.model_validate(await svc.get(db, rule_id))


@router.put("/{rule_id}", response_model=RuleOut)
async def replace_rule(rule_id: uuid.UUID, body: RuleIn, _: AdminUser, db: SessionDep) -> RuleOut:
    rule = await svc.replace(db, rule_id, body)
    await db.commit()
    await db.refresh(rule)
    return RuleOut.model_validate(rule)


@router.delete("/{rule_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_rule(rule_id: uuid.UUID, _: AdminUser, db: SessionDep) -> Response:
    await svc.delete(db, rule_id)
    await db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)

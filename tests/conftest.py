"""Fixtures shared by the whole suite.

- ``hub_user(name, groups)``: a JupyterHub ``User`` backed by an in-memory hub database, with
  its groups, for building spawners outside a running hub.
"""

from __future__ import annotations

import pytest
from jupyterhub import orm
from jupyterhub.objects import Hub
from jupyterhub.user import User


@pytest.fixture
def hub_db():
    db = orm.new_session_factory("sqlite:///:memory:")()
    yield db
    db.close()


@pytest.fixture
def hub_user(hub_db):
    def make(name: str, groups=()) -> User:
        orm_user = orm.User(name=name)
        hub_db.add(orm_user)
        for g in groups:
            group = hub_db.query(orm.Group).filter_by(name=g).first() or orm.Group(name=g)
            hub_db.add(group)
            orm_user.groups.append(group)
        hub_db.commit()
        return User(orm_user, {"hub": Hub()})

    return make

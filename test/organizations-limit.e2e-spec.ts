import { Stack, startStack } from './support/stack';
import { newTenant } from './support/tenant';

/* MAX_ORGANIZATIONS_PER_USER: a user owns at most that many organizations, counting the one made at signup. */
describe('organizations a user may own', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ worker: false, env: { MAX_ORGANIZATIONS_PER_USER: '3' } });
  }, 60_000);
  afterAll(() => stack?.stop(), 30_000);

  it('refuses a fourth with 403 plan_limit, also when the creations race, and counts owned organizations only', async () => {
    const ada = await newTenant(stack, 'Ada');
    const create = (auth: { Authorization: string }, name: string) => stack.http().post('/organizations').set(auth).send({ name });
    // Signup made one: two more at once, racing with two others, leave exactly three owned.
    const answers = await Promise.all(['A', 'B', 'C', 'D'].map((name) => create(ada.auth, name)));
    expect(answers.map((a) => a.status).sort()).toEqual([201, 201, 403, 403]);
    const refused = answers.find((a) => a.status === 403)!;
    expect(refused.body).toMatchObject({ statusCode: 403, code: 'plan_limit', error: expect.stringContaining('3') });
    const owned = (await stack.http().get('/organizations').set(ada.auth).expect(200)).body.organizations;
    expect(owned).toHaveLength(3);

    // Being a member of someone else's organization does not count.
    const bob = await newTenant(stack, 'Bob');
    await stack.http().patch(`/organizations/${bob.organizationId}`).set(bob.auth).send({ plan: 'team' }).expect(200);
    await stack.http().post(`/organizations/${bob.organizationId}/members`).set(bob.auth).send({ email: ada.email, role: 'admin' }).expect(201);
    await create(bob.auth, 'Bob 2').expect(201);
    await create(ada.auth, 'E').expect(403);
    // API tokens never create organizations.
    const token = await stack.http().post(`/organizations/${bob.organizationId}/api-tokens`).set(bob.auth).send({ name: 'ci', role: 'admin' }).expect(201);
    await create({ Authorization: `Bearer ${token.body.token}` }, 'F').expect(403);
  });
});

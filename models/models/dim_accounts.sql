-- One row per account with its current subscription (the latest one started) and size.
with ranked_subscriptions as (
    select
        account_id,
        plan,
        status,
        started_at,
        row_number() over (
            partition by account_id
            order by started_at desc, subscription_id desc
        ) as recency
    from {{ ref('stg_subscriptions') }}
),

current_subscription as (
    select account_id, plan, status, started_at
    from ranked_subscriptions
    where recency = 1
),

user_counts as (
    select account_id, count(*) as user_count
    from {{ ref('stg_users') }}
    group by account_id
)

select
    a.account_id,
    a.name,
    a.domain,
    a.industry,
    a.region,
    a.country,
    a.employee_count,
    case
        when a.employee_count is null then 'unknown'
        when a.employee_count >= 1000 then 'enterprise'
        when a.employee_count >= 200 then 'mid_market'
        else 'smb'
    end                                         as segment,
    a.created_at,
    coalesce(cs.plan, a.plan)                   as plan,
    coalesce(cs.status, 'none')                 as subscription_status,
    cs.started_at                               as plan_started_at,
    cast(coalesce(uc.user_count, 0) as bigint)  as user_count
from {{ ref('stg_accounts') }} a
left join current_subscription cs on cs.account_id = a.account_id
left join user_counts uc on uc.account_id = a.account_id

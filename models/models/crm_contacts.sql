-- CRM contacts for identity resolution. Values stay as the CRM has them (case, nicknames,
-- phone formats): normalising them is the identity engine's job. Only the company domain is
-- cleaned, so that it can block candidate pairs.
select
    cast(contact_id as bigint)                          as contact_id,
    trim(email)                                         as email,
    trim(full_name)                                     as full_name,
    trim(phone)                                         as phone,
    replace(lower(trim(company_domain)), 'www.', '')    as company_domain,
    cast(updated_at as timestamp)                       as updated_at
from {{ source('tools', 'crm_contacts') }}
